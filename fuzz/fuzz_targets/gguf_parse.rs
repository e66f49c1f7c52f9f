//! Feeds arbitrary bytes to the GGUF parser: it must return Ok or Err, never panic, and
//! whatever it accepts must be readable within the file's bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = qgraph::gguf::GgufFile::from_bytes(data) {
        for t in file.tensors() {
            let bytes = file.tensor_bytes(t);
            assert_eq!(bytes.len() as u64, t.n_bytes);
            if t.dtype.is_computable() && t.n_elements < 1 << 16 {
                let _ = file.dequantize(t);
            }
        }
    }
});
