/work/main/runtime-host/tests/guest/target/wasm32-wasip2/release/deps/waker_fn-a53d585194c14176.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/waker-fn-1.2.0/src/lib.rs

/work/main/runtime-host/tests/guest/target/wasm32-wasip2/release/deps/libwaker_fn-a53d585194c14176.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/waker-fn-1.2.0/src/lib.rs

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/waker-fn-1.2.0/src/lib.rs:
