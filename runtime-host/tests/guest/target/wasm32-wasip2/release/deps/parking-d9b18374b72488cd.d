/work/main/runtime-host/tests/guest/target/wasm32-wasip2/release/deps/parking-d9b18374b72488cd.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/parking-2.2.1/src/lib.rs

/work/main/runtime-host/tests/guest/target/wasm32-wasip2/release/deps/libparking-d9b18374b72488cd.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/parking-2.2.1/src/lib.rs

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/parking-2.2.1/src/lib.rs:
