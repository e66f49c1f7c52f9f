//! The executor's boundary: every call is checked once, and bad calls get clear errors.

use std::sync::Arc;

use qgraph::exec::{ExecError, Session};
use qgraph::gguf::tiny::TinyLlama;
use qgraph::gguf::GgufFile;
use qgraph::kernels::KernelLevel;
use qgraph::plan::{Plan, PlanOptions};

fn session(seq: usize, n_ctx: usize) -> Session {
    session_at(seq, n_ctx, PlanOptions::default().level)
}

fn session_at(seq: usize, n_ctx: usize, level: KernelLevel) -> Session {
    let model =
        Arc::new(GgufFile::from_bytes(&TinyLlama::default().writer().unwrap().to_bytes()).unwrap());
    let g = qgraph::graph::parse(include_str!("../graphs/llama.toml"), "llama.toml")
        .unwrap()
        .bind(&model)
        .unwrap();
    let opts = PlanOptions {
        seq,
        n_ctx,
        level,
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
        s.forward_all(&[1, 2, 3]).unwrap_err(),
        ExecError::TooManyTokens { got: 3, seq: 2 }
    );
    // `forward` takes any prompt that fits, in steps of the plan's `seq`.
    assert_eq!(s.forward(&[1, 2, 3]).unwrap().len(), 96);
    assert_eq!(s.position(), 3);
}

/// A prompt fed in one batch and token by token: at the scalar level every kernel runs per
/// token in the same order whatever the batch, so the logits are bitwise equal; at the SIMD
/// level the batched product (gemm) sums in another order than the gemv, so they agree to
/// rounding (and on the argmax).
#[test]
fn batch_equals_token_by_token() {
    let tokens = [5u32, 9, 11, 2, 40];
    for level in [KernelLevel::Scalar, PlanOptions::default().level] {
        let mut one = session_at(1, 16, level);
        let stepwise: Vec<Vec<f32>> = tokens
            .iter()
            .map(|&t| one.forward(&[t]).unwrap().to_vec())
            .collect();
        let mut batch = session_at(5, 16, level);
        let all = batch.forward_all(&tokens).unwrap().to_vec();
        for (i, row) in all.chunks(96).enumerate() {
            if level == KernelLevel::Scalar {
                assert_eq!(row, &stepwise[i][..], "position {i}");
            } else {
                let diff = row
                    .iter()
                    .zip(&stepwise[i])
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(diff < 1e-3, "position {i}: max difference {diff}");
            }
        }
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
