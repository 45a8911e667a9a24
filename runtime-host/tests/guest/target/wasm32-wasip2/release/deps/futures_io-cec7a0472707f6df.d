/work/main/runtime-host/tests/guest/target/wasm32-wasip2/release/deps/futures_io-cec7a0472707f6df.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/futures-io-0.3.34/src/lib.rs

/work/main/runtime-host/tests/guest/target/wasm32-wasip2/release/deps/libfutures_io-cec7a0472707f6df.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/futures-io-0.3.34/src/lib.rs

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/futures-io-0.3.34/src/lib.rs:
