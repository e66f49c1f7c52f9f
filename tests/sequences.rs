//! Several sequences in one KV memory (what `qgraph serve` batches): a sequence's logits are
//! bitwise the same whether it runs alone or in a batch with others — joining late, leaving
//! early, rows in any order — at any thread count. SmolLM2 and Gemma 3 (sliding windows,
//! a SentencePiece vocabulary), the fastest level.

mod common;

use std::sync::Arc;

use qgraph::exec::{ExecError, Row, Session};
use qgraph::gguf::GgufFile;
use qgraph::graph::Graph;
use qgraph::kernels::table;
use qgraph::plan::{Logits, Plan, PlanOptions};

struct Model {
    file: Arc<GgufFile>,
    graph: Graph,
    prompts: Vec<Vec<u32>>,
}

fn model() -> Model {
    open(common::real_model(), "llama")
}

fn open(path: std::path::PathBuf, graph: &str) -> Model {
    let file = Arc::new(GgufFile::open(path).unwrap());
    let graph = qgraph::graph::load(format!(
        "{}/graphs/{graph}.toml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
    .bind(&file)
    .unwrap();
    let tok = qgraph::tokenizer::Tokenizer::from_gguf(&file).unwrap();
    let prompts = [
        "Rivers shape the cities built beside them because trade, water and defence all \
         follow the current.",
        "Write a haiku about bread.",
        "2 + 2 =",
        "The committee met on Tuesday to discuss the budget, the schedule for the new \
         library, and a proposal to rename the main square after the town's first mayor, \
         who had founded the school.",
    ]
    .iter()
    .map(|p| tok.encode(p, true, true).unwrap())
    .collect();
    Model {
        file,
        graph,
        prompts,
    }
}

/// A decode plan for `seq` rows (every row's logits) and a prefill plan (chunks of 16, the
/// last row's), both over `sequences` regions.
fn session(m: &Model, sequences: usize, seq: usize, threads: usize) -> Session {
    let base = PlanOptions {
        seq,
        n_ctx: 160,
        level: table::detect(),
        threads,
        sequences,
        ..PlanOptions::default()
    };
    let prefill = PlanOptions {
        seq: 16,
        logits: Logits::Last,
        ..base.clone()
    };
    let plan = |o: &PlanOptions| Arc::new(Plan::new(&m.graph, m.file.clone(), o).unwrap());
    Session::with_prefill(plan(&base), plan(&prefill)).unwrap()
}

fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// One prompt alone: prefill, then `steps` greedy decode steps; every logits vector.
fn alone(m: &Model, prompt: &[u32], steps: usize) -> Vec<Vec<u32>> {
    let mut s = session(m, 1, 1, 1);
    let mut logits = s.forward(prompt).unwrap().to_vec();
    let mut out = vec![bits(&logits)];
    for _ in 0..steps {
        logits = s.forward(&[argmax(&logits)]).unwrap().to_vec();
        out.push(bits(&logits));
    }
    out
}

/// Sequence state in the batched run.
struct Live {
    pos: usize,
    next: u32,
    out: Vec<Vec<u32>>,
}

#[test]
fn a_sequence_gets_the_same_logits_alone_and_batched() {
    same_alone_and_batched(&model());
}

#[test]
fn a_gemma_sequence_gets_the_same_logits_alone_and_batched() {
    same_alone_and_batched(&open(common::gemma3_model(), "gemma3"));
}

fn same_alone_and_batched(m: &Model) {
    let steps = 6;
    let want: Vec<_> = m.prompts.iter().map(|p| alone(m, p, steps)).collect();
    for threads in [1, 2] {
        let mut s = session(m, 4, 4, threads);
        let mut live: Vec<Option<Live>> = (0..4).map(|_| None).collect();
        let join = |s: &mut Session, live: &mut Vec<Option<Live>>, i: usize| {
            // Prompt i goes to region 3 - i: regions and request order are independent.
            let logits = s.forward_sequence(3 - i, 0, &m.prompts[i]).unwrap();
            live[i] = Some(Live {
                pos: m.prompts[i].len(),
                next: argmax(logits),
                out: vec![bits(logits)],
            });
        };
        join(&mut s, &mut live, 0);
        join(&mut s, &mut live, 1);
        for step in 0.. {
            // The third and fourth join late; rows go in a different order every step.
            if step == 2 {
                join(&mut s, &mut live, 2);
            }
            if step == 3 {
                join(&mut s, &mut live, 3);
            }
            let mut rows: Vec<(usize, Row)> = live
                .iter()
                .enumerate()
                .filter_map(|(i, l)| l.as_ref().map(|l| (i, l)))
                .filter(|(_, l)| l.out.len() <= steps)
                .map(|(i, l)| {
                    let row = Row {
                        seq: 3 - i,
                        pos: l.pos,
                        token: l.next,
                    };
                    (i, row)
                })
                .collect();
            if rows.is_empty() {
                break;
            }
            if step % 2 == 1 {
                rows.reverse();
            }
            let batch: Vec<Row> = rows.iter().map(|r| r.1).collect();
            let logits = s.forward_rows(&batch).unwrap().to_vec();
            for ((i, _), row) in rows.iter().zip(logits.chunks(s.n_vocab())) {
                let l = live[*i].as_mut().unwrap();
                l.pos += 1;
                l.next = argmax(row);
                l.out.push(bits(row));
            }
        }
        for (i, l) in live.iter().enumerate() {
            let got = &l.as_ref().unwrap().out;
            assert_eq!(got.len(), want[i].len());
            for (k, (a, b)) in got.iter().zip(&want[i]).enumerate() {
                assert!(
                    a == b,
                    "{threads} threads: prompt {i}, call {k}: batched logits differ from alone"
                );
            }
        }
    }
}

#[test]
fn batched_calls_check_their_rows() {
    let m = model();
    let mut s = session(&m, 2, 4, 1);
    let row = |seq, pos, token| Row { seq, pos, token };
    assert_eq!(
        s.forward_rows(&[row(2, 0, 1)]).unwrap_err(),
        ExecError::SequenceOutOfRange {
            seq: 2,
            sequences: 2
        }
    );
    assert_eq!(
        s.forward_rows(&[row(0, 5, 1), row(1, 5, 1), row(0, 5, 2)])
            .unwrap_err(),
        ExecError::DuplicateRow {
            a: 0,
            b: 2,
            seq: 0,
            pos: 5
        }
    );
    assert!(matches!(
        s.forward_rows(&[row(0, 160, 1)]),
        Err(ExecError::ContextFull { n_ctx: 160, .. })
    ));
    assert!(matches!(
        s.forward_rows(&[row(0, 0, 1); 5]),
        Err(ExecError::TooManyTokens { got: 5, seq: 4 })
    ));
    assert!(matches!(
        s.forward_sequence(1, 150, &[1; 11]),
        Err(ExecError::ContextFull { needed: 161, .. })
    ));
    assert!(matches!(
        s.forward_rows(&[row(0, 0, 1 << 30)]),
        Err(ExecError::TokenOutOfRange { .. })
    ));
}
