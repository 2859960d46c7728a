//! The decoding pool (`generate::pool`, issue 13): replies decoded together equal the
//! same replies made alone, do not depend on thread timing, reuse kept prefixes without
//! changing a reply, and a bad request fails alone.

use std::time::Duration;

use candle_core::Device;
use tarjuma::backend::gguf::{self, Loaded};
use tarjuma::generate::pool::{Pool, Request};
use tarjuma::generate::{DecodeOptions, Output, Session, StopReason};

use crate::fixtures::{write_tiny_gguf, Variant};

fn model() -> (tempfile::TempDir, Loaded) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    write_tiny_gguf(&path, Variant::Ok);
    let loaded = gguf::load(&path, &Device::Cpu).unwrap();
    (dir, loaded)
}

fn pool(l: &Loaded) -> Pool {
    Pool::start(
        l.lm.model.clone(),
        l.tokenizer.clone(),
        l.lm.max_positions,
        "tiny".into(),
    )
    .unwrap()
}

/// Six prompts of different lengths sharing a 20-token opening, and their options:
/// greedy with different budgets, one sampled, one with a repetition penalty.
fn requests() -> Vec<Request> {
    let opening: Vec<u32> = (0..20).map(|i| 40 + i * 3).collect();
    (0..6u32)
        .map(|i| {
            let mut prompt = opening.clone();
            prompt.extend((0..(3 + 7 * i)).map(|j| (j * 13 + i * 29) % 250));
            let mut opts = DecodeOptions {
                max_new: 10 + 5 * i as usize,
                loop_guard: false,
                ..Default::default()
            };
            if i == 2 {
                opts.temperature = 0.8;
                opts.seed = 7;
            }
            if i == 4 {
                opts.repeat_penalty = 1.3;
            }
            Request {
                prompt,
                opts,
                keep: 0,
            }
        })
        .collect()
}

fn alone(l: &mut Loaded, r: &Request) -> Output {
    let mut s = Session::new(&mut l.lm, &r.prompt).unwrap();
    s.generate(&l.tokenizer, &r.opts).unwrap()
}

/// Every request on its own client and thread; `stagger` delays each thread's request
/// by a different time.
fn together(p: &Pool, reqs: &[Request], stagger: bool) -> Vec<Output> {
    let clients: Vec<_> = reqs.iter().map(|_| p.client()).collect();
    std::thread::scope(|s| {
        let hs: Vec<_> = clients
            .into_iter()
            .zip(reqs)
            .enumerate()
            .map(|(i, (c, r))| {
                s.spawn(move || {
                    if stagger {
                        std::thread::sleep(Duration::from_millis(((i * 37) % 5) as u64 * 20));
                    }
                    c.generate(r.clone()).unwrap()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn pool_replies_equal_replies_alone_whatever_the_timing() {
    let (_d, mut l) = model();
    let reqs = requests();
    let solo: Vec<Vec<u32>> = reqs.iter().map(|r| alone(&mut l, r).ids).collect();
    let p = pool(&l);
    let first = together(&p, &reqs, false);
    for (i, (o, want)) in first.iter().zip(&solo).enumerate() {
        assert_eq!(&o.ids, want, "request {i}");
        assert_eq!(o.stop, StopReason::MaxTokens);
        assert_eq!(o.ids.len(), reqs[i].opts.max_new);
    }
    let again = together(&p, &reqs, true);
    let ids = |v: &[Output]| v.iter().map(|o| o.ids.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&again), ids(&first), "timing changed a reply");
}

#[test]
fn pool_kept_prefix_is_reused_without_changing_the_reply() {
    let (_d, l) = model();
    let mut reqs = requests();
    for r in &mut reqs {
        r.keep = 20;
    }
    // A fresh pool computes the prefix for the last request itself ...
    let fresh = pool(&l).client().generate(reqs[5].clone()).unwrap();
    // ... another starts from the copy the first request left.
    let p = pool(&l);
    let c = p.client();
    c.generate(reqs[0].clone()).unwrap();
    let reused = c.generate(reqs[5].clone()).unwrap();
    assert_eq!(reused.ids, fresh.ids);
    assert_eq!(reused.text, fresh.text);
    // A prompt that only starts like the kept prefix does not take it.
    let mut other = reqs[5].clone();
    other.prompt[3] += 1;
    let o = c.generate(other.clone()).unwrap();
    let o_fresh = pool(&l).client().generate(other).unwrap();
    assert_eq!(o.ids, o_fresh.ids);
}

#[test]
fn pool_bad_request_fails_alone_and_names_the_prompt() {
    let (_d, l) = model();
    let p = pool(&l);
    let reqs = requests();
    let too_long = Request {
        prompt: vec![5; l.lm.max_positions + 1],
        opts: DecodeOptions::default(),
        keep: 0,
    };
    let (bad, good) = (p.client(), p.client());
    let r0 = reqs[0].clone();
    let r1 = reqs[1].clone();
    let (e, after, o) = std::thread::scope(|s| {
        // A client stays in the pool's batch while it exists: the failed one asks
        // again at once (the pool goes on serving it) rather than idle.
        let b = s.spawn(move || {
            let e = bad.generate(too_long).unwrap_err();
            (e, bad.generate(r0))
        });
        let g = s.spawn(move || good.generate(r1).unwrap());
        let (e, after) = b.join().unwrap();
        (e, after, g.join().unwrap())
    });
    let msg = format!("{e:#}");
    assert!(
        msg.contains("model `tiny`: reading a prompt of 4097 tokens")
            && msg.contains("exceeds the model's limit of 4096"),
        "{msg}"
    );
    assert_eq!(o.ids.len(), reqs[1].opts.max_new);
    assert_eq!(after.unwrap().ids.len(), reqs[0].opts.max_new);
}
