//! The executor's boundary: every call is checked once, and bad calls get clear errors.

use std::sync::Arc;

use qgraph::exec::{ExecError, Session};
use qgraph::gguf::tiny::TinyLlama;
use qgraph::gguf::GgufFile;
use qgraph::plan::{Plan, PlanOptions};

fn session(seq: usize, n_ctx: usize) -> Session {
    let model =
        Arc::new(GgufFile::from_bytes(&TinyLlama::default().writer().unwrap().to_bytes()).unwrap());
    let g = qgraph::graph::parse(include_str!("../graphs/llama.toml"), "llama.toml")
        .unwrap()
        .bind(&model)
        .unwrap();
    let opts = PlanOptions {
        seq,
        n_ctx,
        ..PlanOptions::default()
    };
    Session::new(Arc::new(Plan::new(&g, model, &opts).unwrap())).unwrap()
}

#[test]
fn token_out_of_range() {
    let mut s = session(1, 8);
    assert_eq!(
        s.forward(&[96]).unwrap_err(),
        ExecError::TokenOutOfRange {
            token: 96,
            n_vocab: 96
        }
    );
    assert_eq!(s.position(), 0, "a rejected call changes nothing");
    assert!(s.forward(&[95]).is_ok());
    assert!(ExecError::TokenOutOfRange {
        token: 96,
        n_vocab: 96
    }
    .to_string()
    .contains("96"));
}

#[test]
fn context_full() {
    let mut s = session(2, 4);
    s.forward(&[1, 2]).unwrap();
    s.forward(&[3]).unwrap();
    assert_eq!(
        s.forward(&[4, 5]).unwrap_err(),
        ExecError::ContextFull {
            n_ctx: 4,
            needed: 5
        }
    );
    s.forward(&[4]).unwrap();
    assert_eq!(
        s.forward(&[5]).unwrap_err(),
        ExecError::ContextFull {
            n_ctx: 4,
            needed: 5
        }
    );
    s.reset();
    assert!(s.forward(&[5]).is_ok());
}

#[test]
fn batch_limits() {
    let mut s = session(2, 8);
    assert_eq!(s.forward(&[]).unwrap_err(), ExecError::Empty);
    assert_eq!(
        s.forward(&[1, 2, 3]).unwrap_err(),
        ExecError::TooManyTokens { got: 3, seq: 2 }
    );
}

/// A prompt fed in one batch and token by token gives the same logits: every kernel runs
/// per token in the same order whatever the batch.
#[test]
fn batch_equals_token_by_token() {
    let tokens = [5u32, 9, 11, 2, 40];
    let mut one = session(1, 16);
    let stepwise: Vec<Vec<f32>> = tokens
        .iter()
        .map(|&t| one.forward(&[t]).unwrap().to_vec())
        .collect();
    let mut batch = session(5, 16);
    let all = batch.forward_all(&tokens).unwrap().to_vec();
    for (i, row) in all.chunks(96).enumerate() {
        assert_eq!(row, &stepwise[i][..], "position {i}");
    }
}

#[test]
fn truncate_recomputes_from_a_position() {
    let mut s = session(1, 8);
    let a: Vec<Vec<f32>> = [1u32, 2, 3]
        .iter()
        .map(|&t| s.forward(&[t]).unwrap().to_vec())
        .collect();
    s.truncate(1);
    assert_eq!(s.forward(&[2]).unwrap(), &a[1][..]);
    assert_eq!(s.forward(&[3]).unwrap(), &a[2][..]);
}
